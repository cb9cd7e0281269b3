mixup.py --arch resnet20 --epochs 6 --batch-size 128 --seed 3 
